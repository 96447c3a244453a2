-- sluice.window: window descriptions for flow layers (API.md §5).
-- A window is a plain table (it crosses to the workers with the flow's
-- layer configuration); the layer stages read `type`.
local W = {}

--- W.global(): one window per layer, id "global", fired "done" when every
--- upstream producer has finished.
function W.global()
  return { type = "global", id = "global" }
end

return W
