-- Reserved: migration 0016 belongs to another branch. This file only keeps the numbers without a gap on the
-- delegation branch; drop it when that branch's 0016 is merged.
select 1;
