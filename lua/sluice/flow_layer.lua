-- sluice.flow_layer: the spec of a Flow layer's stages, as a module. A
-- module crosses between Lua states by its name, so starting a layer's
-- stages sends "sluice.flow_layer" instead of the spec's callbacks and
-- everything they reach; each state loads sluice.flow once.
return require("sluice.flow")._LayerStage
