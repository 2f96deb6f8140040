// Azure Database for PostgreSQL Flexible Server: Microsoft Entra authentication only (no password login exists),
// built-in PgBouncer on port 6432 where the tier offers it. The app's managed identity is deliberately not an
// Entra administrator (one could create roles and grant itself anything): the postprovision hook, as the
// deploying administrator, creates its role with pgaadauth_create_principal_with_oid and grants it its rows.
param name string
param location string = resourceGroup().location
param tags object = {}
param databaseName string = 'leadpush'
param version string = '16'
param skuName string = 'Standard_D2ds_v5'
@allowed([
  'Burstable'
  'GeneralPurpose'
  'MemoryOptimized'
])
param skuTier string = 'GeneralPurpose'
param storageSizeGB int = 32
@description('Disabled with vnetEnabled: only the private endpoint reaches the server (the postprovision hook opens it to the deployer for its own run only).')
@allowed([
  'Enabled'
  'Disabled'
])
param publicNetworkAccess string = 'Disabled'

// Azure offers the built-in PgBouncer on General Purpose and Memory Optimized only.
var pgBouncerEnabled = skuTier != 'Burstable'

resource server 'Microsoft.DBforPostgreSQL/flexibleServers@2024-08-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: skuName
    tier: skuTier
  }
  properties: {
    version: version
    createMode: 'Default'
    authConfig: {
      activeDirectoryAuth: 'Enabled'
      passwordAuth: 'Disabled'
      tenantId: subscription().tenantId
    }
    storage: {
      storageSizeGB: storageSizeGB
      autoGrow: 'Enabled'
    }
    backup: {
      backupRetentionDays: 7
      geoRedundantBackup: 'Disabled'
    }
    highAvailability: {
      mode: 'Disabled'
    }
    network: {
      publicNetworkAccess: publicNetworkAccess
    }
  }
}

// Without the virtual network, a Flex Consumption app has no fixed outbound address: admit Azure's own ranges.
// The server still requires TLS and an Entra token for every login. With it, the app comes through the
// private endpoint and no rule is needed.
resource allowAzureServices 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2024-08-01' = if (publicNetworkAccess == 'Enabled') {
  parent: server
  name: 'AllowAllAzureServicesAndResourcesWithinAzureIps'
  properties: {
    startIpAddress: '0.0.0.0'
    endIpAddress: '0.0.0.0'
  }
}

// Changes to one server run one at a time (the service answers ServerIsBusy otherwise): each waits for the last.
resource database 'Microsoft.DBforPostgreSQL/flexibleServers/databases@2024-08-01' = {
  parent: server
  name: databaseName
  properties: {
    charset: 'UTF8'
    collation: 'en_US.utf8'
  }
  dependsOn: [
    allowAzureServices
  ]
}

resource pgBouncer 'Microsoft.DBforPostgreSQL/flexibleServers/configurations@2024-08-01' = if (pgBouncerEnabled) {
  parent: server
  name: 'pgbouncer.enabled'
  properties: {
    value: 'true'
    source: 'user-override'
  }
  dependsOn: [
    database
  ]
}

output name string = server.name
output id string = server.id
output host string = server.properties.fullyQualifiedDomainName
output databaseName string = database.name
output appPort int = pgBouncerEnabled ? 6432 : 5432
output pgBouncerEnabled bool = pgBouncerEnabled
output publicNetworkAccess string = publicNetworkAccess
