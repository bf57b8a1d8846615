-- GET a page of 50 orders with a JWT.
local tokens = {
--TOKENS--
}

wrk.method = "GET"
wrk.path = "--PATH--"
wrk.headers["Authorization"] = "Bearer " .. tokens[1]
