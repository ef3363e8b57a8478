from tierq.engine.handlers.loader import handler

__all__ = ["handler"]
