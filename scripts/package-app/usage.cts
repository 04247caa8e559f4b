// The README's usage, type-checked against the installed package (CommonJS, `require`).
import jobwerk = require('jobwerk')
const { JobManagementService, UnrecoverableError, getJobManagementService } = jobwerk

const tablePositions: jobwerk.AsyncCalculation<{ leagueId: number }, number> = {
  name: 'table-positions',
  calculate(data, context, job) {
    job.updateProgress({ step: 'start', contentType: context.contentType })
    if (data.leagueId < 0) throw new UnrecoverableError('no such league')
    return data.leagueId
  },
}

async function main(strapi: object): Promise<void> {
  const service: jobwerk.JobManagementService = getJobManagementService(strapi)
  await service.start()
  const id: string = service.addCalculationJob(tablePositions, { leagueId: 7 }, { contentType: 'api::match.match', operationId: 'op-1' })
  const status: jobwerk.CalculationStatus | null = service.getJobStatus(id)
  const health = service.getSystemHealth()?.overall
  console.log(status?.status, health, new JobManagementService({ storage: { type: 'memory' } }).now())
  await service.stop()
}

export = main
