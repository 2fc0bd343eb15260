-- Argo CD health check for the cleanup.artifacts.dev kinds: CleanupPolicy, StoragePrune, ArtifactStreamSync.
-- One script serves every kind; argocd-cm-patch.yaml installs it under each kind's
-- resource.customizations.health.cleanup.artifacts.dev_<Kind> key (regenerate it with
-- `python -m cleanup_operator.argocd`). Lua 5.1, standard library only, as Argo CD's gopher-lua runs it.
--
-- spec.suspend                                    -> Suspended
-- no status, or status.observedGeneration behind  -> Progressing
-- Stalled=True                                    -> Degraded
-- Ready=True                                      -> Healthy
-- StoragePrune phase Pending | Waiting | Running  -> Progressing; phase Failed -> Degraded
-- Reconciling=True                                -> Progressing
-- Ready=False                                     -> Degraded
-- anything else (Ready missing or Unknown)        -> Progressing
local hs = {}

local function condition(status, type_)
  if type(status.conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

local function explain(c, fallback)
  if c ~= nil and type(c.message) == "string" and c.message ~= "" then
    if type(c.reason) == "string" and c.reason ~= "" then
      return c.reason .. ": " .. c.message
    end
    return c.message
  end
  if c ~= nil and type(c.reason) == "string" and c.reason ~= "" then
    return c.reason
  end
  return fallback
end

local function health(status_, message)
  hs.status = status_
  hs.message = message
  return hs
end

if obj.spec ~= nil and obj.spec.suspend == true then
  return health("Suspended", "spec.suspend is true: reconciling is paused")
end

local status = obj.status
if status == nil then
  return health("Progressing", "Waiting for the operator to report status")
end
local generation = obj.metadata and obj.metadata.generation
if status.observedGeneration == nil or (generation ~= nil and status.observedGeneration ~= generation) then
  return health("Progressing", "Waiting for the operator to act on generation " .. tostring(generation))
end

local stalled = condition(status, "Stalled")
if is_true(stalled) then
  return health("Degraded", explain(stalled, "Stalled: a human must act"))
end

local ready = condition(status, "Ready")
if is_true(ready) then
  return health("Healthy", explain(ready, "Ready"))
end

local reconciling = condition(status, "Reconciling")
if obj.kind == "StoragePrune" then
  local phase = status.phase
  if phase == "Pending" or phase == "Waiting" or phase == "Running" then
    local progress = ""
    if type(status.progress) == "string" and status.progress ~= "" then
      progress = " (" .. status.progress .. " directories)"
    end
    return health("Progressing", "Prune " .. phase .. progress .. ": " .. explain(reconciling, "in progress"))
  end
  if phase == "Failed" then
    local err = status.error
    if type(err) ~= "string" or err == "" then
      err = "no error text from Artifactory"
    end
    return health("Degraded", explain(ready, "prune failed: " .. err))
  end
end

if is_true(reconciling) then
  return health("Progressing", explain(reconciling, "Reconciling"))
end

if ready ~= nil and ready.status == "False" then
  return health("Degraded", explain(ready, "Not ready"))
end

return health("Progressing", "Waiting for the Ready condition")
