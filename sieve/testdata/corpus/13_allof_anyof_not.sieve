require "fileinto";
if allof (exists "from", not exists "list-id", anyof (header :contains "subject" "meeting", true)) {
  fileinto "A";
}
if anyof (false, not true) { fileinto "Never"; }
if not anyof (header :is "precedence" "list", header :is "precedence" "bulk") { fileinto "NotBulk"; }
