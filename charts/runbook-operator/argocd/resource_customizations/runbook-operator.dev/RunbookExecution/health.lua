-- Argo CD health of a runbook-operator.dev RunbookExecution (docs/gitops.md).
-- Reads what the operator writes: status.observedGeneration, status.phase and the
-- Ready/Reconciling/Stalled conditions. Lua 5.1 with the base and table libraries only (what
-- Argo CD gives a script from argocd-cm): no string, math or os functions.
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

local function explain(c, fallback)
  if c == nil or c.message == nil or c.message == "" then
    return fallback
  end
  if c.reason == nil then
    return c.message
  end
  return c.reason .. ": " .. c.message
end

local function progress(status)
  if status.progress == nil then
    return status.phase
  end
  return status.phase .. ", " .. status.progress .. " steps finished"
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to start the execution"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

-- Stalled=True: FAILED, CANCELLED, or stopped where it stood (a rewritten ledger).
local stalled = condition(status, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = explain(stalled, progress(status))
  return hs
end

local phase = status.phase
if phase == "FAILED" or phase == "CANCELLED" then
  hs.status = "Degraded"
  hs.message = progress(status)
  if status.message ~= nil then
    hs.message = hs.message .. ": " .. status.message
  end
  return hs
end
if phase == "COMPLETED" then
  hs.status = "Healthy"
  hs.message = progress(status)
  return hs
end
if phase == "PAUSED" then
  hs.status = "Suspended"
  hs.message = progress(status)
  return hs
end

-- PENDING or RUNNING; a reconcile that failed and is retried says why.
hs.status = "Progressing"
hs.message = progress(status)
local reconciling = condition(status, "Reconciling")
if reconciling ~= nil and reconciling.reason == "ReconcileError" then
  hs.message = explain(reconciling, hs.message)
end
return hs
