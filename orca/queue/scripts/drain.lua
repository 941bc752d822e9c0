-- Mark a pool drained (its claims return nothing) or undrained.
-- KEYS: draining    ARGV: pool, 1 to drain / 0 to undrain    -> 1 if that changed anything
if ARGV[2] == '1' then
  return redis.call('SADD', KEYS[1], ARGV[1])
end
return redis.call('SREM', KEYS[1], ARGV[1])
