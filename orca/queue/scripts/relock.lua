-- Extend a job's controller lock if it is still held by this token.
-- KEYS: lock    ARGV: token, ttl ms    -> 1 if extended
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
