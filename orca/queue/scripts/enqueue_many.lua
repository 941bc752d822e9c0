-- Add chunks as pending, at the tail. Ids already known to the job are skipped,
-- so a repeated call (a retry after a lost reply) adds nothing twice.
-- KEYS: chunks, pending, counts    ARGV: chunk ids    -> number newly added
local fresh = cjson.encode({state = 'pending', attempts = 0, gen = 0, owner = '', pool = '', committed = 0, error = ''})
local added = 0
for _, id in ipairs(ARGV) do
  if redis.call('HSETNX', KEYS[1], id, fresh) == 1 then
    redis.call('RPUSH', KEYS[2], id)
    added = added + 1
  end
end
if added > 0 then
  redis.call('HINCRBY', KEYS[3], 'pending', added)
  redis.call('HINCRBY', KEYS[3], 'total', added)
end
return added
