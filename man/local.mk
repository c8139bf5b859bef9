# Manual pages, written in roff by hand and distributed as they are.
dist_man3_MANS = man/libzoned-client.3
dist_man5_MANS = man/zonedd.conf.5
dist_man8_MANS = man/zonedd.8 man/zonectl.8
