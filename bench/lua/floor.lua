-- The floor endpoints (bench/floor.py): --METHOD-- --PATH--, no authentication.
wrk.method = "--METHOD--"
wrk.path = "--PATH--"
