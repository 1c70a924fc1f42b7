-- wrk script for reads that the page cache must not answer: every request carries a
-- parameter the app ignores (nocache=<thread>-<n>) with a value never sent before, so each
-- one is a cache miss and the route does all of its work. Reports like report.lua.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local report_setup = setup
local started = 0

function setup(thread)
  report_setup(thread)
  started = started + 1
  thread:set("thread_id", started)
end

local sent = 0

function request()
  sent = sent + 1
  local separator = wrk.path:find("?", 1, true) and "&" or "?"
  local path = wrk.path .. separator .. "nocache=" .. thread_id .. "-" .. sent
  return wrk.format(nil, path)
end
