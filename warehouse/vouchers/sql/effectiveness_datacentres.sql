-- effectiveness datacentres: one row per data centre of the registry (current version) with the region and ownership the effectiveness report groups it by; inputs: datacentres
SELECT datacentre, region, ownership
FROM datacentres
ORDER BY datacentre;
