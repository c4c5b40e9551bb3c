import { setupTestContext } from '../helper.js'
import { describeColumnTypes } from '../support/column-types.js'

// The long run of the column-type property: FUZZ_RUNS values per endpoint (default 1000).
describeColumnTypes(setupTestContext(), Number(process.env.FUZZ_RUNS ?? 1000), 1_800_000)
