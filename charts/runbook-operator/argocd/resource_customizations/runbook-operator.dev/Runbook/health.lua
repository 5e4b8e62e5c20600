-- Argo CD health of a runbook-operator.dev Runbook (docs/gitops.md): Healthy once the operator
-- validated this generation, Degraded while it is invalid (the problems in the message).
-- Lua 5.1 with the base and table libraries only (what Argo CD gives a script from argocd-cm).
local hs = {}

local function condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function explain(c)
  if c.message == nil or c.message == "" then
    return c.reason
  end
  return c.reason .. ": " .. c.message
end

local status = obj.status
if status == nil or status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to validate the runbook"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to validate generation " .. generation
  return hs
end

local stalled = condition(status, "Stalled")
local valid = condition(status, "Valid")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = explain(stalled)
  return hs
end
if valid ~= nil and valid.status == "False" then
  hs.status = "Degraded"
  hs.message = explain(valid)
  return hs
end

local ready = condition(status, "Ready")
if ready == nil then
  ready = valid
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end
hs.status = "Progressing"
hs.message = "Waiting for the operator to validate the runbook"
return hs
