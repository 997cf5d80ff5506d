require ["body", "fileinto"];
if body :contains "tomorrow" { fileinto "b-tomorrow"; }
if body :contains "rapport" { fileinto "b-rapport"; }
if body :contains "Café crème" { fileinto "b-cafe"; }
if body :contains "zeppelin" { fileinto "b-zeppelin"; }
if body :contains "preamble" { fileinto "b-preamble"; }
if body :contains "épilogue" { fileinto "b-epilogue"; }
if body :contains "JVBERi0" { fileinto "b-base64"; }
if body :matches "*price*" { fileinto "b-price"; }
