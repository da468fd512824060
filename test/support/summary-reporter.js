/**
 * Ends the run with one plain line, `N passed, N failed, N skipped`, that any CI can read. "failed" counts failed
 * tests and also every file that failed outside its tests (a hook such as afterAll, a file that does not load) and a
 * run that failed for any other reason, so the line never says 0 failed when the exit code says the run failed.
 */
const { relative } = require('node:path');

class SummaryReporter {
  constructor(globalConfig) {
    this.rootDir = globalConfig.rootDir;
  }

  onRunComplete(_contexts, results) {
    const outside = results.testResults.filter((file) => file.testExecError || (file.failureMessage && file.numFailingTests === 0));
    let failed = results.numFailedTests + outside.length;
    const notes = outside.map((file) => `${relative(this.rootDir, file.testFilePath)} failed outside its tests`);
    // Jest decides the exit code after the reporters ran: the same causes, counted here.
    const runErrors = [
      results.runExecError && `the run failed: ${results.runExecError.message}`,
      results.snapshot.failure && 'snapshots failed',
      results.numTotalTestSuites === 0 && 'no test files were found',
      results.wasInterrupted && 'the run was interrupted',
    ].filter(Boolean);
    failed += runErrors.length;
    notes.push(...runErrors);
    const line = `${results.numPassedTests} passed, ${failed} failed, ${results.numPendingTests + results.numTodoTests} skipped`;
    process.stdout.write(`\n${line}${notes.length ? ` (${notes.join('; ')})` : ''}\n`);
  }
}
module.exports = SummaryReporter;
