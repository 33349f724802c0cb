-- Orthanc auto-routing to sax-range.
-- When an MR series has received nothing for Orthanc's "StableAge" seconds, send it to the sax-range SCP
-- registered as DicomModalities entry "saxrange". The objects sax-range sends back (SR, SC, KOS) are not MR,
-- so they are never routed back to it.
--
-- Enable it in the Orthanc configuration:  "LuaScripts": ["/etc/orthanc/autoroute.lua"]
-- and declare the modality:  "DicomModalities": { "saxrange": ["SAXRANGE", "sax-range-host", 11112] }

function OnStableSeries(seriesId, tags, metadata)
  if tags['Modality'] == 'MR' then
    print('sax-range: routing stable MR series ' .. seriesId)
    -- SendToModality() takes one instance; a whole series goes through the REST API, as an asynchronous
    -- Orthanc job so that the Lua thread is not blocked while it is sent.
    RestApiPost('/modalities/saxrange/store', '{"Resources":["' .. seriesId .. '"],"Synchronous":false}')
  end
end
