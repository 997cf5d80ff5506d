require ["body", "fileinto"];
if body :raw :contains "Caf=E9" { fileinto "raw-qp"; }
if body :raw :contains "PGh0bWw" { fileinto "raw-b64"; }
if body :raw :contains "preamble" { fileinto "raw-preamble"; }
if body :raw :contains "line 99 of" { fileinto "raw-99"; }
if body :raw :contains "Bonjour" { fileinto "raw-bonjour"; }
if body :raw :matches "*mail system*" { fileinto "raw-bounce"; }
