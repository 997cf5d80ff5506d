require ["include", "variables", "fileinto"];
fileinto "inc-${x}";
global "x";
fileinto "inc2-${x}";
