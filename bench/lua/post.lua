-- wrk script for the write path: POST /api/posts with a JSON body (the bearer token comes
-- from the command line, -H "Authorization: Bearer ..."), counting non-2xx responses.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"title": "A benchmark post about sourdough", "content": '
  .. '"I started with no plan at all, which turned out to be the right plan. '
  .. 'The first attempt was a mess, and the second one was only slightly better.\\n\\n'
  .. 'Most of the advice online contradicts itself, so I kept a notebook instead. '
  .. 'It takes longer than you expect, and that is **half of the pleasure**.\\n\\n'
  .. '- a [link](https://example.com/)\\n- a list item"}'

non2xx = 0

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end
