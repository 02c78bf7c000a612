// The end-to-end tests start real processes and bind real ports: running them one class at a time keeps a
// 2-core machine from timing out start-ups while other classes start theirs.
[assembly: CollectionBehavior(MaxParallelThreads = 2)]

// Unix sockets, signals and /proc: these tests describe Linux behaviour.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
