// One class runs the C tests one after another: several of them measure time limits (an operation must fail after
// 300 ms, not 2 s), which a second class loading the 2 cores at the same time would disturb.
[assembly: CollectionBehavior(DisableTestParallelization = true)]

// Unix sockets, fork(), valgrind and /proc: these tests describe Linux behaviour.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
