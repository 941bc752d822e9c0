-- Extend a live lease. Refused (STALE) unless the chunk is leased under this generation.
-- KEYS: chunks, leases    ARGV: chunk id, generation, lease ms    -> new expiry ms
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return redis.error_reply('NOCHUNK ' .. ARGV[1]) end
local c = cjson.decode(raw)
local gen = tonumber(ARGV[2])
if c.state ~= 'leased' or c.gen ~= gen then
  return redis.error_reply('STALE ' .. ARGV[1] .. ' generation ' .. gen .. ' (now ' .. c.state .. ' at generation ' .. c.gen .. ')')
end
local t = redis.call('TIME')
local expires = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[3])
redis.call('ZADD', KEYS[2], expires, ARGV[1])
return expires
