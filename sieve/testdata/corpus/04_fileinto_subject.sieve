require "fileinto";
if header :contains "subject" "meeting" {
  fileinto "Work";
} elsif header :contains "subject" ["[dev]", "build"] {
  fileinto "Lists.dev";
} else {
  fileinto "Other";
}
