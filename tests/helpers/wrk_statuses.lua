-- For wrk -s: count responses by status over all threads, and print the counts and the socket
-- errors as one line of JSON at the end (wrk itself only says "Non-2xx or 3xx responses: N").
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      counts[#counts + 1] = string.format('"%d": %d', status, n)
    end
  end
  local e = summary.errors
  io.write(string.format(
    '{"statuses": [{%s}], "errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d},'
      .. ' "p99_ms": %.2f, "max_ms": %.2f}\n',
    table.concat(counts, "}, {"), e.connect, e.read, e.write, e.timeout,
    latency:percentile(99) / 1000, latency.max / 1000))
end
