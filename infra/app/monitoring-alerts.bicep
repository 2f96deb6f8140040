// Alerts on the app's own OpenTelemetry metrics (customMetrics in Application Insights), with one action group.
// Each query lives in ../monitoring/queries so tests can check it names only what the app emits.
param location string = resourceGroup().location
param tags object = {}
param applicationInsightsId string
param actionGroupName string
@description('Address that receives the alerts; empty = the action group has no email receiver.')
param alertEmail string = ''
@description('Alert when more than this percentage of pushes in 15 minutes end "failed".')
@minValue(1)
@maxValue(100)
param failedSharePercentThreshold int = 10
@description('Alert when Dataverse throttles in this many consecutive 5-minute windows.')
@minValue(1)
@maxValue(6)
param throttledWindows int = 3

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: actionGroupName
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'leadpush'
    enabled: true
    emailReceivers: empty(alertEmail) ? [] : [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

resource poisonQueueNotEmpty 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'leadpush-poison-queue-not-empty'
  location: location
  tags: tags
  properties: {
    displayName: 'lead push: poison queue not empty'
    description: 'Leads that can never be written wait in the poison queue. Fix the cause, then replay them (docs/deploy.md).'
    severity: 2
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      allOf: [
        {
          query: loadTextContent('../monitoring/queries/alert-poison-queue.kql')
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'depth'
          dimensions: [
            {
              name: 'queue'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource failedPushShare 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'leadpush-failed-push-share'
  location: location
  tags: tags
  properties: {
    displayName: 'lead push: share of failed pushes above ${failedSharePercentThreshold}%'
    description: 'Over the last 15 minutes, more than ${failedSharePercentThreshold}% of pushes ended failed (permanent errors, or retries exhausted).'
    severity: 1
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: loadTextContent('../monitoring/queries/alert-failed-share.kql')
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'failed_percent'
          operator: 'GreaterThan'
          threshold: failedSharePercentThreshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource queueStalled 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'leadpush-queue-growing-without-success'
  location: location
  tags: tags
  properties: {
    displayName: 'lead push: lead queue growing, no push succeeding'
    description: 'The lead queue grew over 15 minutes and no push succeeded: the push function is down, or every push fails or defers.'
    severity: 1
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: loadTextContent('../monitoring/queries/alert-queue-stalled.kql')
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource dataverseThrottling 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'leadpush-dataverse-throttling'
  location: location
  tags: tags
  properties: {
    displayName: 'lead push: Dataverse throttling persists'
    description: 'Dataverse answered 429 in each of ${throttledWindows} consecutive 5-minute windows: the app is at the service protection limits (lower maximumInstanceCount or host.json batchSize).'
    severity: 2
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      allOf: [
        {
          query: loadTextContent('../monitoring/queries/alert-dataverse-throttling.kql')
          timeAggregation: 'Total'
          metricMeasureColumn: 'throttled'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: throttledWindows
            minFailingPeriodsToAlert: throttledWindows
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

// Fires within 5 minutes of a pause opening. The `pipeline_paused` event is logged as the pause opens and its batch
// is exported within about a second (the log processor's 1 s schedule); Application Insights makes telemetry
// queryable typically 20 s to 3 minutes after it arrives; the rule runs every minute. So: about 1 s + at most
// ~3 min + at most 1 min, about 4 minutes in the worst typical case. The 5-minute window still holds an event that
// arrived 3 minutes late at the next run, and holds one of the gauge's minute-by-minute readings of 1 for as long as
// the pause lasts, so the alert stays fired and resolves about 5 minutes after the pause lifts. The gauge alone
// would be too slow to open it: up to 60 s to the timer's next reading and 60 s to the next metric export, then the
// same ingestion and evaluation, about 6 minutes.
// Severity 0 (critical): no lead reaches Dataverse until a person fixes the configuration (README: the pause).
resource pipelinePaused 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'leadpush-pipeline-paused'
  location: location
  tags: tags
  properties: {
    displayName: 'lead push: pipeline paused'
    description: 'An org-level Dataverse failure paused the pipeline: every lead waits (none fails) until the configuration is fixed. The dimension `reason` says what to fix (README, "When Dataverse\'s configuration breaks: the pause").'
    severity: 0
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT1M'
    windowSize: 'PT5M'
    criteria: {
      allOf: [
        {
          query: loadTextContent('../monitoring/queries/alert-pipeline-paused.kql')
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'paused'
          dimensions: [
            {
              name: 'reason'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

output actionGroupId string = actionGroup.id
output alertNames array = [
  poisonQueueNotEmpty.name
  failedPushShare.name
  queueStalled.name
  dataverseThrottling.name
  pipelinePaused.name
]
