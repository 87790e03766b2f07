-- One database per service (each owns its schema and migrations); run once by the postgres
-- image on an empty data volume.
CREATE DATABASE flotilla_accounts;
CREATE DATABASE flotilla_tasks;
CREATE DATABASE flotilla_assistant;
CREATE DATABASE flotilla_audit;
