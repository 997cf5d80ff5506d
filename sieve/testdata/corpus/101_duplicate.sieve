require ["duplicate", "fileinto"];
if duplicate { fileinto "dup"; }
if duplicate :handle "h1" :seconds 3600 { fileinto "dup-h1"; }
if duplicate :header "list-id" :last { fileinto "dup-list"; }
if duplicate :uniqueid "fixed" :handle "h2" { fileinto "dup-fixed"; }
