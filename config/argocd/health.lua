-- Argo CD health check for regwire.dev RegistryMirror and ImageSync, from the conditions
-- regwire sets (Ready, and kstatus' Reconciling and Stalled). Put it into argocd-cm as
-- resource.customizations.health.regwire.dev_RegistryMirror and ..._ImageSync.
if obj.status == nil or obj.status.conditions == nil then
  return {status = "Progressing", message = "waiting for the controller"}
end
if obj.metadata.generation ~= nil and obj.status.observedGeneration ~= obj.metadata.generation then
  return {status = "Progressing", message = "waiting for the controller to observe the change"}
end
local hs = {status = "Progressing", message = "waiting for the controller"}
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Stalled" and c.status == "True" then
    return {status = "Degraded", message = c.message}
  end
  if c.type == "Ready" and c.reason == "Suspended" then
    return {status = "Suspended", message = c.message}
  end
  if c.type == "Ready" and c.status == "True" then
    hs = {status = "Healthy", message = c.message}
  elseif c.type == "Ready" then
    hs = {status = "Progressing", message = c.message}
  end
end
return hs
