require ["editheader"];
deleteheader :last "x-tag";
