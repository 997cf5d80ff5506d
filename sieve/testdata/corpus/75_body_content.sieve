require ["body", "fileinto"];
if body :content "text/plain" :contains "Café" { fileinto "c-plain-cafe"; }
if body :content "text/html" :contains "<b>rapport</b>" { fileinto "c-html-markup"; }
if body :content "text/html" :contains "Café &amp; crème" { fileinto "c-html-entity"; }
if body :content "text" :contains "42 000 €" { fileinto "c-euro"; }
if body :content "application/pdf" :contains "%PDF-1.4" { fileinto "c-pdf"; }
if body :content "multipart" :contains "preamble" { fileinto "c-preamble"; }
if body :content "multipart" :contains "epilogue" { fileinto "c-epilogue"; }
if body :content "message/rfc822" :contains "forwarded note" { fileinto "c-rfc822-header"; }
if body :content "message/rfc822" :contains "zeppelin" { fileinto "c-rfc822-body"; }
if body :content "" :contains "zeppelin" { fileinto "c-any"; }
if body :content "image" :contains "" { fileinto "c-image"; }
if body :content ["image", "text/plain"] :contains "coupée ici" { fileinto "c-softbreak"; }
