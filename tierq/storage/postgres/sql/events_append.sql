INSERT INTO events (at, body) SELECT * FROM unnest($1::double precision[], $2::bytea[])
