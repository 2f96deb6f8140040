// An Azure Monitor workbook over the app's telemetry: the pipeline's pauses, throughput, outcomes, push duration,
// queue depths, failed leads with their reasons, Dataverse errors, and what became of the pushed leads in the CRM. Queries come from ../monitoring/queries; the time range picker
// applies to each of them (timeContextFromParameter), so the query files stay plain KQL.
param location string = resourceGroup().location
param tags object = {}
param applicationInsightsId string
param displayName string = 'lead push'

var timeRange = {
  durationMs: 86400000
}

var sources = {
  queryType: 0
  resourceType: 'microsoft.insights/components'
  timeContext: timeRange
  timeContextFromParameter: 'TimeRange'
}

var content = {
  version: 'Notebook/1.0'
  items: [
    {
      type: 1
      name: 'intro'
      content: {
        json: '## lead push\nHunter leads into Dataverse: what came in, what was written, what failed and why. Metrics come from the app\'s OpenTelemetry meter `leadpush`; failed leads, pauses and CRM outcomes from its log events.'
      }
    }
    {
      type: 9
      name: 'parameters'
      content: {
        version: 'KqlParameterItem/1.0'
        parameters: [
          {
            id: '5b0c7f0e-6c1e-4f7a-9d3c-0a1c3e1f2b10'
            version: 'KqlParameterItem/1.0'
            name: 'TimeRange'
            label: 'Time range'
            type: 4
            isRequired: true
            value: timeRange
            typeSettings: {
              selectableValues: [
                { durationMs: 3600000 }
                { durationMs: 14400000 }
                { durationMs: 86400000 }
                { durationMs: 259200000 }
                { durationMs: 604800000 }
                { durationMs: 2592000000 }
              ]
            }
          }
        ]
        style: 'pills'
        queryType: 0
        resourceType: 'microsoft.insights/components'
      }
    }
    {
      type: 3
      name: 'pipeline-paused'
      content: union(sources, {
        version: 'KqlItem/1.0'
        title: 'Pipeline paused: reason, since when, leads waiting (empty resumed_at: paused now)'
        query: loadTextContent('../monitoring/queries/workbook-pipeline-paused.kql')
        visualization: 'table'
        size: 0
      })
    }
    {
      type: 3
      name: 'throughput'
      content: union(sources, {
        version: 'KqlItem/1.0'
        title: 'Throughput: leads accepted and pushes finished (per 5 minutes)'
        query: loadTextContent('../monitoring/queries/workbook-throughput.kql')
        visualization: 'timechart'
        size: 0
      })
    }
    {
      type: 3
      name: 'outcomes'
      content: union(sources, {
        version: 'KqlItem/1.0'
        title: 'Pushes by outcome (per 5 minutes)'
        query: loadTextContent('../monitoring/queries/workbook-outcomes.kql')
        visualization: 'barchart'
        size: 0
      })
    }
    {
      type: 3
      name: 'duration'
      content: union(sources, {
        version: 'KqlItem/1.0'
        title: 'Push duration (ms) by outcome'
        query: loadTextContent('../monitoring/queries/workbook-duration.kql')
        visualization: 'table'
        size: 0
      })
    }
    {
      type: 3
      name: 'queue-depth'
      content: union(sources, {
        version: 'KqlItem/1.0'
        title: 'Queue depth: lead queue and poison queue'
        query: loadTextContent('../monitoring/queries/workbook-queue-depth.kql')
        visualization: 'timechart'
        size: 0
      })
    }
    {
      type: 3
      name: 'failed-leads'
      content: union(sources, {
        version: 'KqlItem/1.0'
        title: 'Failed leads and their reasons'
        query: loadTextContent('../monitoring/queries/workbook-failed-leads.kql')
        visualization: 'table'
        size: 0
      })
    }
    {
      type: 3
      name: 'dataverse-errors'
      content: union(sources, {
        version: 'KqlItem/1.0'
        title: 'Dataverse errors by HTTP status and request kind'
        query: loadTextContent('../monitoring/queries/workbook-dataverse-errors.kql')
        visualization: 'table'
        size: 0
      })
    }
    {
      type: 3
      name: 'dataverse-error-codes'
      content: union(sources, {
        version: 'KqlItem/1.0'
        title: 'Dataverse error codes'
        query: loadTextContent('../monitoring/queries/workbook-dataverse-error-codes.kql')
        visualization: 'table'
        size: 0
      })
    }
    {
      type: 3
      name: 'crm-states'
      content: union(sources, {
        version: 'KqlItem/1.0'
        title: 'Pushed → qualified / disqualified: leads by CRM state (per hour)'
        query: loadTextContent('../monitoring/queries/workbook-crm-states.kql')
        visualization: 'timechart'
        size: 0
      })
    }
    {
      type: 3
      name: 'conversion'
      content: union(sources, {
        version: 'KqlItem/1.0'
        title: 'Pushed → qualified / disqualified: conversion by Hunter segment and score band'
        query: loadTextContent('../monitoring/queries/workbook-conversion.kql')
        visualization: 'table'
        size: 0
      })
    }
  ]
  fallbackResourceIds: [
    applicationInsightsId
  ]
}

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, applicationInsightsId, 'leadpush-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: applicationInsightsId
    serializedData: string(content)
  }
}

output id string = workbook.id
