require ["fileinto"];
fileinto "stopped";
stop;
