-- RFC 8707 resource indicators an agent may name in a token request (each becomes the token's aud). The default
-- audience (TOKEN_AUDIENCE) is always allowed and is not listed here.
alter table agents add column resources text[] not null default '{}';
