package main

import (
	"context"
	"fmt"
	"io"

	"courriel/directory"
)

// runLDAPSchema prints the LDIF an admin loads with
// `ldapadd -Y EXTERNAL -H ldapi:/// -f file` into cn=config.
func runLDAPSchema(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("ldap-schema", stderr)
	var o directory.SchemaOptions
	fs.StringVar(&o.Database, "database", "", "database entry to index and protect (default olcDatabase={1}mdb,cn=config)")
	fs.StringVar(&o.Suffix, "suffix", "", "directory suffix (default dc=xoyize,dc=xyz)")
	fs.StringVar(&o.MailBase, "mail-base", "", "subtree holding mail accounts (default ou=mail,<suffix>)")
	fs.StringVar(&o.ReaderDN, "reader-dn", "", "service account (default cn=mailAccountReader,ou=Manager,<suffix>)")
	schemaOnly := fs.Bool("schema-file", false, "print the slapd.conf (.schema) form of the schema instead")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *schemaOnly {
		fmt.Fprint(stdout, directory.SchemaFile())
		return nil
	}
	if err := o.Validate(); err != nil {
		return exitf(2, "%v", err)
	}
	fmt.Fprint(stdout, directory.SchemaLDIF(o))
	return nil
}
