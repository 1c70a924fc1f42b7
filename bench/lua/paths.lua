-- wrk script for reads spread over many pages: `init` reads a file of paths (the script's
-- argument: wrk ... URL -- FILE), and each request asks for one of them at random. Only a
-- 200 counts as success (anything else goes to `non2xx`: a redirect or a 404 would mean the
-- file does not match the dataset). Reports like report.lua.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local report_setup = setup
local started = 0

function setup(thread)
  report_setup(thread)
  started = started + 1
  thread:set("thread_id", started)
end

local paths = {}
non2xx = 0

function init(args)
  local file = assert(io.open(args[1], "r"), "cannot open the paths file " .. tostring(args[1]))
  for line in file:lines() do
    if line ~= "" then
      table.insert(paths, line)
    end
  end
  file:close()
  assert(#paths > 0, "the paths file is empty")
  -- A fixed seed per thread: the same sequence on every run, a different one per thread.
  math.randomseed(1000 + thread_id)
end

function request()
  return wrk.format(nil, paths[math.random(#paths)])
end

function response(status, headers, body)
  if status ~= 200 then
    non2xx = non2xx + 1
  end
end
