-- RFC 9449 §5.2 client metadata: an agent with dpop_bound_access_tokens gets tokens only with a DPoP proof, each
-- bound to the proof's key (cnf.jkt). Off by default: an agent opts in on create or patch.
alter table agents add column dpop_bound_access_tokens boolean not null default false;
