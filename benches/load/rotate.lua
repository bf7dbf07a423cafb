-- wrk script for benches/load/run.
--
-- Every request asks for the next path of the list in $LOAD_LIST (lines
-- "<path> <size of the original in bytes>"), with `Connection: close` and
-- `Accept: $LOAD_ACCEPT`. run starts wrk with as many threads as
-- connections: each thread then has one connection, whose request and
-- response alternate, so response() knows which original it answers and
-- the bytes in are exact.
--
-- Each wrk thread has its own Lua state: setup() (run in the main state)
-- keeps the threads, init() loads the list in each thread and starts it at
-- another offset, and done() (main state again) adds up the threads'
-- counters with thread:get() and writes one JSON object to $LOAD_RESULT.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("id", #threads)
end

function init(args)
   paths, sizes = {}, {}
   for line in io.lines(os.getenv("LOAD_LIST")) do
      local path, size = line:match("^(%S+)%s+(%d+)$")
      if path then
         table.insert(paths, path)
         table.insert(sizes, tonumber(size))
      end
   end
   accept = os.getenv("LOAD_ACCEPT")
   -- Spread the threads over the list.
   index = (id - 1) * 3 % #paths
   current = nil
   issued, responses, in_bytes, body_bytes, non200, unmatched = 0, 0, 0, 0, 0, 0
   -- wrk 4.1 calls request() once in the first thread's state before the
   -- run, to see whether it pipelines (script_verify_request): that
   -- request is never sent, so it is not counted.
   verifying = (id == 1)
end

local function format(path)
   return wrk.format("GET", path, { ["Accept"] = accept, ["Connection"] = "close" })
end

function request()
   if verifying then
      verifying = false
      return format(paths[1])
   end
   index = index % #paths + 1
   issued = issued + 1
   current = index
   return format(paths[index])
end

function response(status, headers, body)
   responses = responses + 1
   body_bytes = body_bytes + #body
   if current then
      in_bytes = in_bytes + sizes[current]
      current = nil
   else
      unmatched = unmatched + 1  -- would mean more than one connection per thread
   end
   if status ~= 200 then
      non200 = non200 + 1
   end
end

function done(summary, latency, requests)
   local sum = { issued = 0, responses = 0, in_bytes = 0, body_bytes = 0, non200 = 0, unmatched = 0 }
   for _, thread in ipairs(threads) do
      for key, _ in pairs(sum) do
         sum[key] = sum[key] + thread:get(key)
      end
   end
   local e = summary.errors
   local out = io.open(os.getenv("LOAD_RESULT"), "w")
   out:write(string.format(
      '{"duration_us": %d, "requests": %d, "responses": %d, "issued": %d, ' ..
      '"in_bytes": %d, "body_bytes": %d, "non200": %d, "unmatched": %d, ' ..
      '"p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
      '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\n',
      summary.duration, summary.requests, sum.responses, sum.issued,
      sum.in_bytes, sum.body_bytes, sum.non200, sum.unmatched,
      latency:percentile(50), latency:percentile(99), latency.max,
      e.connect, e.read, e.write, e.status, e.timeout))
   out:close()
end
