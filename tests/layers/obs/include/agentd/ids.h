enum id_kind { ID_RUN, ID_TOOL };
