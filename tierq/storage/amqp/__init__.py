"""The AMQP (RabbitMQ) event sink, behind ``tierq[amqp]``."""
