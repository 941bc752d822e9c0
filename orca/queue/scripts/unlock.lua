-- Release a job's controller lock if it is still held by this token (it may have expired and been taken).
-- KEYS: lock    ARGV: token    -> 1 if released
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
