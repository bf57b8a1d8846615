-- POST --PATH-- (an order's JSON body) with a JWT, one of several users per request (each user has a cap on active orders).
local tokens = {
--TOKENS--
}
local counter = 0

request = function()
  counter = counter + 1
  local token = tokens[(counter % #tokens) + 1]
  local body = string.format('{"order_name":"wrk %d","schedule_time":"2031-01-01T00:00:00Z"}', counter)
  return wrk.format("POST", "--PATH--", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, body)
end
