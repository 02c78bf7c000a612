// The targets keep state between inputs (a session store, the formatters' buffers), as the fuzzer's single
// process does: one input at a time.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
