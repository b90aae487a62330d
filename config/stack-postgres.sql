-- The table of the docker-compose stack's `accounts` mapping (config/stack.yaml), made when the postgres service
-- first starts. The hub creates the publication and the replication slot itself (create: true), and sets REPLICA
-- IDENTITY FULL (replica_identity_full: true) so that updates and deletes carry the old row.
CREATE TABLE accounts (
    id bigint PRIMARY KEY,
    email text NOT NULL,
    plan text NOT NULL DEFAULT 'free',
    updated_at timestamptz NOT NULL DEFAULT now()
);
