-- The three functions of the map/filter/count workload, shared by the
-- sluice flow (mapfilter.lua) and the plain loop (mapfilter_plain.lua).
return {
  inc = function(x) return x + 1 end,
  even = function(x) return x % 2 == 0 end,
  count = function(_, acc) return acc + 1 end,
}
