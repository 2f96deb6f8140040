// The private endpoints of vnetEnabled, each with the private DNS zone that makes the service's usual name
// resolve to it from inside the network (the public name is a CNAME to <name>.privatelink.<...>). Once public
// network access is off, these are the only way in. The host needs blob (its locks, the deployment package),
// queue (the trigger) and table (its diagnostics); the app the queue, the vault and PostgreSQL.
param location string = resourceGroup().location
param tags object = {}
param namePrefix string
param vnetId string
param subnetId string
param storageAccountId string
param keyVaultId string
param postgresServerId string

var endpoints = [
  {
    name: 'blob'
    targetId: storageAccountId
    groupId: 'blob'
    dnsZoneName: 'privatelink.blob.${environment().suffixes.storage}'
  }
  {
    name: 'queue'
    targetId: storageAccountId
    groupId: 'queue'
    dnsZoneName: 'privatelink.queue.${environment().suffixes.storage}'
  }
  {
    name: 'table'
    targetId: storageAccountId
    groupId: 'table'
    dnsZoneName: 'privatelink.table.${environment().suffixes.storage}'
  }
  {
    name: 'vault'
    targetId: keyVaultId
    groupId: 'vault'
    dnsZoneName: 'privatelink.vaultcore.azure.net'
  }
  {
    name: 'postgres'
    targetId: postgresServerId
    groupId: 'postgresqlServer'
    dnsZoneName: 'privatelink.postgres.database.azure.com'
  }
]

resource zone 'Microsoft.Network/privateDnsZones@2024-06-01' = [
  for endpoint in endpoints: {
    name: endpoint.dnsZoneName
    location: 'global'
    tags: tags
  }
]

resource link 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = [
  for (endpoint, i) in endpoints: {
    parent: zone[i]
    name: '${namePrefix}${endpoint.name}-link'
    location: 'global'
    tags: tags
    properties: {
      virtualNetwork: {
        id: vnetId
      }
      registrationEnabled: false
    }
  }
]

resource privateEndpoint 'Microsoft.Network/privateEndpoints@2024-05-01' = [
  for endpoint in endpoints: {
    name: '${namePrefix}${endpoint.name}'
    location: location
    tags: tags
    properties: {
      subnet: {
        id: subnetId
      }
      privateLinkServiceConnections: [
        {
          name: '${namePrefix}${endpoint.name}'
          properties: {
            privateLinkServiceId: endpoint.targetId
            groupIds: [
              endpoint.groupId
            ]
          }
        }
      ]
    }
  }
]

resource zoneGroup 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-05-01' = [
  for (endpoint, i) in endpoints: {
    parent: privateEndpoint[i]
    name: 'default'
    properties: {
      privateDnsZoneConfigs: [
        {
          name: replace(endpoint.dnsZoneName, '.', '-')
          properties: {
            privateDnsZoneId: zone[i].id
          }
        }
      ]
    }
    dependsOn: [
      link[i]
    ]
  }
]
