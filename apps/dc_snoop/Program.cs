// Placeholder until this tool is implemented: it exists so that scripts and packaging find every 1.5.1 tool.
// It says so plainly instead of pretending to work.
Console.Error.WriteLine("dc_snoop: not implemented yet in this version of distcache for .NET");
return 1;
