-- step_finish: a step's outcome, recorded once: WAITING, SCHEDULED or RUNNING -> SUCCEEDED
-- (with its output) or FAILED (with its error); WAITING -> SKIPPED (its `when` was false, or
-- a parent was skipped; the reason kept as its error). The first failure of an active run fails it:
-- its WAITING steps are SKIPPED, its other SCHEDULED ones CANCELED, and the run is FAILED, or
-- stays RUNNING for its on_failure step (field `failed`), whose end then fails it. When every
-- other step has finished, a RUNNING run SUCCEEDED (its on_failure step SKIPPED). A finished
-- run expires after the retention time. A run canceled meanwhile stays CANCELED: the outcome
-- is recorded and starts nothing (docs/adr/0010).
-- KEYS[1] <prefix>:{run:<id>}:run      HASH the run and its steps
-- ARGV[1] step; ARGV[2] SUCCEEDED | FAILED | SKIPPED; ARGV[3] output or error (reason); ARGV[4] finished (ms,
-- 0 = now); ARGV[5] attempts; ARGV[6] retention (ms); ARGV[7] the on_failure step or '';
-- ARGV[8..] every step of the run
-- Returns: {1, run state, ids of the tasks of steps canceled now...}; {-1} no such run;
-- {-3} the step had finished already (nothing changed)
--! include clock
--! include finish_step
return finish_step(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7],
  {unpack(ARGV, 8)})
