/* placeholder: being written */
typedef int zd_placeholder_client;
