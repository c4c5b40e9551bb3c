-- What a credential holds: today only a client secret (an argon2id hash). A credential holding a public key
-- (private_key_jwt) or a federation rule will be a new type here, not a new table. Client authentication verifies
-- a secret only against a client_secret credential.
alter table credentials add column type text not null default 'client_secret' check (type in ('client_secret'));
