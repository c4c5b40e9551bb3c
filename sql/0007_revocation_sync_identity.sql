-- Each database's own identity, in the completeness marker Redis holds (revoked:complete = '<database_id>:<epoch>'):
-- a fresh database starts at epoch 0, so without it a Redis left over from, or shared with, another database
-- could pass for a complete copy of this one. Random per database, fixed once made.
alter table revocation_sync add column database_id uuid not null default gen_random_uuid();
